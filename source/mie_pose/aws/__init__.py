"""AWS Lambda entry points: the workflow's steps, the API adapter, the upload trigger and the custom resource.

Every entry point is thin: it parses its event, builds the runtime from the environment
(``mie_pose.aws_runtime``) and calls the same operator and API code the local engine runs.
"""
