"""API access: keys with usage plans, bearer tokens with scopes, and the one decision both
topologies make with them (the local gateway in process, the Lambda REQUEST authorizer on AWS).
"""
