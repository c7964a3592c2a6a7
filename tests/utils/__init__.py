"""What several test files share: digit samples, the default manifest, jobs made with their
message, and API processes isolated from the result cache."""
