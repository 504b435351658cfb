//! One module per subcommand.

pub mod lab;
mod lab_demo;
pub mod limits;
pub mod max_pods;
pub mod node;
pub mod plan;
pub mod pool;
pub mod sim;
