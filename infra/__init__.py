"""CDK constructs and stacks of the backend; imported only at synth time, never by functions.

`infra.application.build_app` composes them from the function catalog; `app.py` calls it.
"""
