//! The site agent: dials out, serves streams to targets on its allowlist, heals itself.
