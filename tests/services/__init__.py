"""The real services the tests run against: GitHub in a box (API emulator, Actions results service,
git server), the act driver, a container registry and an SMTP server."""
