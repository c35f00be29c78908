//! The public edge: tunnel listener, agent registry, resource listeners, admin API.
