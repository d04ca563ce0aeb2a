"""The limits the server enforces, defined once: Settings' defaults, load_npz's defaults and the image reader."""

from __future__ import annotations

MB = 1024 * 1024  # as in the server's settings (CLEANER_MAX_NPZ_MB, ...) and Streamlit's upload limit

# An uploaded or server-side NPZ
# The file, and separately the decompressed arrays together: room for MAX_ROWS images with 768-D float32
# embeddings (a ViT-B's width) and their paths; a reader's peak memory is a small multiple of it.
MAX_NPZ_BYTES = 4096 * MB
MAX_ROWS = 1_000_000
MAX_DIMS = 4096
MAP_LIMIT = 1_000_000  # points the map draws at most; above, the scan's map sample (cleaner.io.map_sample)
MIN_ROWS = 10  # fewer images than this leave nothing to compare
MAX_MEMBERS = 64  # files inside the NPZ; it needs three
MAX_PATH_CHARS = 4096
MAX_LABEL_CHARS = 256

# An uploaded exclusion list or decisions CSV
MAX_LIST_BYTES = 64 * MB

# One image file
MAX_IMAGE_BYTES = 64 * MB
MAX_IMAGE_PIXELS = 64_000_000

# The cache folder (layouts, graphs): least recently used files go first beyond this
CACHE_MAX_BYTES = 2048 * MB
