"""codemix: how code in a pre-training mixture changes what a language model can do."""
import os as _os

# gs:// workdirs through epath's fsspec backend (gcsfs), not TensorFlow's gfile, which
# can't be pointed at another endpoint; the rest is set up by codemix/storage.py.
_os.environ.setdefault("EPATH_USE_TF", "false")
