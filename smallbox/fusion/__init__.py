"""Box fusion: several prediction sets into one. Ensembles of models (WBF, NMS, soft-NMS, NMW,
with size gates per member) and the merge half of sliced inference (tiles of one image) share one
overlap measure (``overlap``)."""
