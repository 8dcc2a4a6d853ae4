"""An asset-oriented recommender platform on Dagster."""
