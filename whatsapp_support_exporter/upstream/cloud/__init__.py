"""The Cloud API (Graph API): an account and its token, the client of one attempt, its answers."""
