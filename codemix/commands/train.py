"""`codemix train`: one run from gin files (also `python -m codemix.main train`)."""
from __future__ import annotations

import json
import logging
import sys

from codemix.train.distributed import add_distributed_arguments, init_distributed


def add_arguments(p):
    p.add_argument("--gin_file", action="append", required=True,
                   help="Gin file(s), later ones override earlier ones.")
    p.add_argument("--gin_param", action="append", default=[],
                   help="A gin binding, e.g. TRAIN_STEPS=60 (repeatable).")
    p.add_argument("--workdir", required=True, help="Run directory; an existing one is resumed.")
    p.add_argument("--allow_config_change", action="store_true",
                   help="resume the workdir's run although its model, data, optimizer, schedule, batch or seed "
                        "settings changed (recorded in its lineage.json); without it such a resume is refused.")
    add_distributed_arguments(p)


def run(args) -> int:
    init_distributed(args)
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.train.guards import NonFiniteLoss
    from codemix.train.trainer import Preempted, train
    config.parse(args.gin_file, args.gin_param)
    from codemix.train import workdir as workdirs

    created = not workdirs.exists(args.workdir)
    try:
        summary = train(workdir=args.workdir, allow_config_change=args.allow_config_change)
    except Preempted as e:
        return int(e.code)
    except NonFiniteLoss as e:
        print(f"codemix train: {e}", file=sys.stderr)
        return 3
    except BaseException:
        _remove_if_empty(args.workdir, created)
        raise
    logging.info("finished: %s", json.dumps(summary))
    print(json.dumps(summary))
    return 0


def _remove_if_empty(workdir: str, created: bool) -> None:
    """A run that failed before writing anything leaves no workdir behind."""
    from etils import epath

    path = epath.Path(workdir)  # a gs:// workdir too
    if created and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
