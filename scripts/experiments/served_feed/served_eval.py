"""evaluate_served on any part: python served_eval.py BUNDLE PART REQUESTS OUT.json (writes OUT.md too)."""
import json, sys, time
from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_report import served_json, served_markdown
t = time.time()
r = evaluate_served(sys.argv[1], options=ServedOptions(part=sys.argv[2], requests=int(sys.argv[3]), panel_users=200))
json.dump(served_json(r), open(sys.argv[4], "w"), indent=1)
open(sys.argv[4].replace(".json", ".md"), "w").write("\n".join(served_markdown(r)))
print("seconds", round(time.time() - t))
