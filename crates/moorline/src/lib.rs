//! moorline: connections to trading venues that stay alive and correct.
