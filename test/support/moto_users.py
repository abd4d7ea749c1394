"""Makes the IAM users the S3 stand-in's tests sign with (moto's server mode, before it enforces auth).

Prints {"writer": {...}, "reader": {...}} with each user's access key: the writer may do anything to S3, the reader
only read and list (a store that refuses writes).
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
users = {"writer": ["s3:*"], "reader": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"]}
out = {}
for name, actions in users.items():
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    out[name] = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
print(json.dumps(out))
