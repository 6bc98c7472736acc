"""Clients the recovery operators share: PostgreSQL (psycopg 3 + libpq tools) and backup storage.

Operators stay thin; everything that talks to a real system lives here, imported lazily so DAG
files that only build operators never pay for psycopg, boto3 or s3fs.
"""
