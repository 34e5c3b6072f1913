"""QM9 ingestion: qm9pack CSVs or the original XYZ files -> one Parquet table."""
