"""Import every module that registers gin configurables or SeqIO tasks, so a
gin file can name them without import statements of its own."""
import codemix.data.local_text  # noqa: F401
import codemix.data.pipeline  # noqa: F401
import codemix.eval.hook  # noqa: F401  (EvalHook; also registers the benchmark tasks)
import codemix.eval.vocabulary  # noqa: F401  (eval_vocabulary)
import codemix.model.config  # noqa: F401
import codemix.train.optimizer  # noqa: F401
import codemix.train.partitioning  # noqa: F401
import codemix.train.trainer  # noqa: F401
import codemix.data.corpus  # noqa: F401,E402
import codemix.data.mixtures  # noqa: F401,E402
import codemix.data.tasks  # noqa: F401,E402
import codemix.data.vocab  # noqa: F401,E402
import codemix.data.heldout  # noqa: F401,E402  (HeldOutOptions)
