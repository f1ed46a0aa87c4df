#!/bin/sh
# Register memlane with Claude Code (https://docs.claude.com/en/docs/claude-code/mcp).
# Local: Claude Code starts `memlane mcp` itself, over stdio, on this machine's store.
claude mcp add memlane --scope user -- memlane mcp --user-id "${MEMLANE_USER_ID:-me}"
# Shared: a team's `memlane mcp --transport http` behind an API key (a tenant key of namespace acme
# may only use ids starting with acme:).
# claude mcp add --transport http memlane-team http://127.0.0.1:8421/mcp \
#   --header "Authorization: Bearer $MEMLANE_API_KEY" --header "X-Memlane-User-Id: acme:me"
