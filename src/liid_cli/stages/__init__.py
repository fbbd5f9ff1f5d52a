"""One module per stage, each exposing `SPEC` (a runner.StageSpec) and a plain `run(config, context)`."""
