"""Import every module that registers gin configurables or SeqIO tasks, so a
gin file can name them without import statements of its own."""
import codemix.data.local_text  # noqa: F401
import codemix.data.pipeline  # noqa: F401
import codemix.model.config  # noqa: F401
import codemix.train.optimizer  # noqa: F401
import codemix.train.partitioning  # noqa: F401
import codemix.train.trainer  # noqa: F401
