#!/bin/sh
# minio-init: the artifact bucket, and MLflow's own MinIO user, allowed into that bucket only
# (the root credentials stay with MinIO and this job). Safe to run again.
set -eu

mc alias set rlops http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "rlops/$MLFLOW_ARTIFACTS_BUCKET"

cat > /tmp/mlflow-artifacts.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": ["arn:aws:s3:::$MLFLOW_ARTIFACTS_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": ["arn:aws:s3:::$MLFLOW_ARTIFACTS_BUCKET/*"]}
  ]
}
JSON
mc admin policy create rlops mlflow-artifacts /tmp/mlflow-artifacts.json
mc admin user add rlops "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
if ! mc admin user info rlops "$MLFLOW_S3_ACCESS_KEY" | grep -q mlflow-artifacts; then
  mc admin policy attach rlops mlflow-artifacts --user "$MLFLOW_S3_ACCESS_KEY"
fi
