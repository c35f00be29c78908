//! The site's local egress allowlist: parsing and matching (pure).
