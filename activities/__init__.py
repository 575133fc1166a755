"""Every side effect of signoff: planning, ansible-runner, PostgreSQL and git."""
