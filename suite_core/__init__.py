"""Code shared by the pipeline (`tfx_pipeline`) and the apps, importing neither.

- `suite_core.beir`: BEIR-format datasets (corpus, queries, qrels).
- `suite_core.ranking_metrics`: nDCG@k, Recall@k, MRR@k over runs and qrels.
- `suite_core.bm25`: the one BM25 (bm25s, English stop words, Snowball stemmer).
- `suite_core.fusion`: masked top-k and rank fusion (RRF, min-max score sum).
- `suite_core.ranking_evaluation`: BM25, embedder, hybrid and hybrid + re-rank over a
  full corpus, scored the same way for the pipeline's Evaluator and `apps.ranker evaluate`.
"""
