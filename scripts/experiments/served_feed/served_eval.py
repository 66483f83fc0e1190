"""evaluate_served on any part: python served_eval.py BUNDLE PART REQUESTS OUT.json [--posterior] (writes OUT.md too).

--posterior adds the posterior oracle's row (sim/posterior.py); the panel is then cut to 50 users."""
import json, sys, time
from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_report import served_json, served_markdown
t = time.time()
posterior = "--posterior" in sys.argv
args = [a for a in sys.argv[1:] if a != "--posterior"]
r = evaluate_served(args[0], options=ServedOptions(part=args[1], requests=int(args[2]), panel_users=50 if posterior else 200, posterior_oracle=posterior))
json.dump(served_json(r), open(args[3], "w"), indent=1)
open(args[3].replace(".json", ".md"), "w").write("\n".join(served_markdown(r)))
print("seconds", round(time.time() - t))
