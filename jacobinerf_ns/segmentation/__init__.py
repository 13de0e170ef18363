"""Masks from a segmenter for the mask surrogate (``--pipeline.datamanager.masks-dir``): overlapping masks as one id
map per image (:mod:`.id_maps`), the folder of id maps (:mod:`.mask_folder`), SAM's weights (:mod:`.sam_weights`)."""
