"""MOC's ablation on our model: SPACE alone, + the motion loss, + motion and object continuity.

:mod:`benchmarks.ablation.runs` trains and scores one detector per game, variant and seed (each a
resumable ``moc-envs train-detector`` then ``moc-envs evaluate`` run); :mod:`benchmarks.ablation.table`
gathers their scores into ``ablation.{json,md,png}``.
"""
