"""`teleport-policy`: the policy author's command (schema, validate, build, format, test, explain, diff).

Development tooling, not used by the Lambda at run time (`build` writes the bundle the Lambda loads); it
evaluates through the interceptor's own `interceptor.policy.PolicyEngine`, so answers match what the deployed
function decides.
"""
