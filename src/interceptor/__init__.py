"""AgentCore Gateway interceptor that turns a Teleport OIDC ID token into an authorized, stamped MCP call."""
