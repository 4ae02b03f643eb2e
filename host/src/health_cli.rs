//! `pmacct-kafka-vm health`: the host on this machine asked for
//! `/health/live`, for a container's HEALTHCHECK that needs no shell and no
//! curl in the image.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::flags::HealthArgs;

/// How long the host may take to answer.
const WITHIN: Duration = Duration::from_secs(2);

/// 0 when the host answered 200, else 1 (why on stderr).
pub fn health(args: &HealthArgs) -> u8 {
    let ip = match args.admin_bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!(
        "http://{}/health/live",
        SocketAddr::new(ip, args.prometheus_client_port)
    );
    let asked = async {
        let client = reqwest::Client::builder().timeout(WITHIN).build()?;
        client.get(&url).send().await?.error_for_status()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let answer = match runtime {
        Ok(rt) => rt.block_on(asked).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            1
        }
    }
}
