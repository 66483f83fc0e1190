"""Offline evaluation: metrics, calibration, baselines, next-click and report charts.

    metrics       ranking within impressions: AUC, GAUC, MRR, nDCG@k, precision@k, per-group arrays
    retrieval     top-K retrieval over the catalog: recall, NDCG, hit rate, MRR, coverage
    calibration   normalized entropy, calibration ratio, reliability table, ECE
    baselines     the Scorer interface, random and popularity (all-time, recent) scorers
    covisitation  the co-visitation scorer
    catalog       retrieval over the catalog live at each query's time
    impressions   ranking and calibration of the logged impressions
    next_click*   the next-click protocol: rank each click among the candidates serving would have
    offline       `feedrank evaluate` (impressions protocol): every system beside the oracle
    report        markdown reports and their charts
    plots         PNG writers (matplotlib Agg): reliability, system comparison, training curves, metric@K
    arrays        sort-based unique helpers (numpy 2.4's np.unique is slow at our sizes)

Every metric is a plain function of arrays; every scorer sees only events strictly before each
query's time. Comparing models and planning or simulating A/B tests live in feedrank.experiments.
"""
