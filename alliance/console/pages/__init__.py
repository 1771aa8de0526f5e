"""Console page groups: one module per group, each a Litestar controller (listed in
``alliance.console.routes.CONSOLE_PAGES``) with its templates under ``templates/<group>/``."""
