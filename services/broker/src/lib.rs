//! PLACEHOLDER on the bus branch: the embedded broker.
/// PLACEHOLDER.
#[derive(Debug, Default)]
pub struct Config {}
/// PLACEHOLDER.
pub async fn build(_: &Config, _: &std::path::Path) -> Result<chassis::service::Service, chassis::service::StartError> {
    Err(chassis::service::StartError::Setup("placeholder".into()))
}
/// PLACEHOLDER.
pub async fn serve(_: chassis::service::ServeOptions, _: chassis::server::Shutdown) -> Result<(), chassis::service::StartError> {
    Err(chassis::service::StartError::Setup("placeholder".into()))
}
