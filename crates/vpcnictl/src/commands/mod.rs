//! One module per subcommand.

pub mod limits;
pub mod max_pods;
pub mod pool;
pub mod sim;
