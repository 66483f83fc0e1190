"""Experiments: deciding whether a model should replace another, and how to find out online.

    compare*        champion/challenger on one split: paired bootstrap intervals, SHIP or HOLD
    ab_plan         A/B planning: sample size, power, minimum detectable effect
    ab_metrics      per-user metrics from logged impressions (variance for planning)
    ab_report       the plan as markdown and power curves
    rollout         a staged rollout plan with guardrails and stopping rules
    online_ab       the online A/B test simulated against the simulator's world
    online_stats    lifts, intervals and p-values of a simulated A/B test
    online_report   its report: Markdown, JSON and plots
    ope*            off-policy estimators (IPS, SNIPS, DR) and their validation on simulated logs

They build on offline evaluation (feedrank.eval), the artifacts of runs and bundles, and serving;
nothing below them imports this package.
"""
