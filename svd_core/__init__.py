"""svd_core: the plain ML library behind svd-mlops (video, curation, data, model, training, evaluation).

It never imports prefect, mlflow, dvc or boto3; those integrations live in `flows`.
"""

__version__ = "0.1.0"
