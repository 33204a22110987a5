"""Human-preference rating app: raters compare two videos side by side; votes go to a SQL database.

`create_app(db_url)` builds the FastAPI app; `service` holds study creation, voting and export;
`svd eval serve / create-study / export-votes / reissue-link / revoke-link / reassign-tasks`
(flows.cli.eval_rating) drive it from the command line; docs/rating.md describes a study end to end.
"""
