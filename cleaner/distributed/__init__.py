"""The heavy step (kNN graph, layout) of `cleaner scan --dask ADDRESS` on a Dask cluster.

Only these modules import dask: the default install and every other path of cleaner never do. Layer: above
cleaner/io (it reads shards and writes nothing of the app's), below cleaner/issues (the CLI scores the graph it
returns with the same `scores_from_graph` as the single-process scan).
"""
