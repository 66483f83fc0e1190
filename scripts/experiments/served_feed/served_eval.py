"""evaluate_served on any part, JSON + markdown (OUT.md beside OUT.json).

    python served_eval.py BUNDLE PART REQUESTS OUT.json [--posterior]

--posterior adds the posterior oracle's row (sim/posterior.py); the panel is then cut to 50 users.
"""

import json
import sys
import time
from pathlib import Path

from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_report import served_json, served_markdown

start = time.time()
posterior = "--posterior" in sys.argv
args = [a for a in sys.argv[1:] if a != "--posterior"]
options = ServedOptions(
    part=args[1], requests=int(args[2]), panel_users=50 if posterior else 200, posterior_oracle=posterior
)
report = evaluate_served(args[0], options=options)
out = Path(args[3])
out.write_text(json.dumps(served_json(report), indent=1))
out.with_suffix(".md").write_text("\n".join(served_markdown(report)))
print("seconds", round(time.time() - start))
