"""One module per `codemix` command, named after it (`codemix model-info` is
model_info.py, `codemix import` is import_.py). Each provides
`add_arguments(parser)` and `run(args) -> int`; codemix/main.py imports only
the module of the command being run. A command module holds the flags, the
printing and the exit codes; what it runs lives in the packages (data/,
train/, eval/, ...), so other code never imports a command module.
"""
