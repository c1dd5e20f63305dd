"""Engines other than the local one (`vswin_cli.inference.Engine`), with the same `stream`/`run`/`scores`.

`ray`: the same decode and model stages as a Ray Data pipeline, for runs past one machine (`vswin tag
--engine ray`; needs the `vswin[ray]` extra).
"""
