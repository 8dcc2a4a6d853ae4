"""Plain services between the Dagster wiring and the algorithms in core/.

Asset bodies read their inputs, call one function here and write outputs and metadata; the
online path, the rollback CLI and the tests call the same functions. Nothing here imports
Dagster or the wiring (assets, checks, resources, definitions): tests/test_layers.py holds the
rule. Services take the plain types of recsys_assets.settings and services.lake / model_store,
which the Dagster resources in resources/ are, configurable.
"""
