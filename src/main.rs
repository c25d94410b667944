//! The `ssehub` binary: reads settings, wires the hub, the server and the feeds.

use std::process::ExitCode;

use anyhow::Context;
use ssehub::config::{self, Command, ServeArgs};
use ssehub::{client, feed, http, Hub};

fn main() -> ExitCode {
    let cli = match config::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("ssehub: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => bench(&args),
        Command::Listen(args) => client::block_on(client::listen(&args)).map_err(Into::into),
        Command::Publish(args) => client::block_on(client::publish(&args)).map_err(Into::into),
        Command::CheckConfig(args) => match config::ops::check_config(&args.file) {
            Ok(()) => {
                println!("ok");
                Ok(())
            }
            Err(reason) => Err(anyhow::Error::msg(reason)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssehub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &ssehub::bench::BenchArgs) -> anyhow::Result<()> {
    if let Some(mode) = &args.mode {
        print!("{}", mode.run()?);
        return Ok(());
    }
    let report = ssehub::bench::run(args)?;
    if let Some(path) = &args.plot {
        ssehub::bench::plot::write_report(&report, path)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

#[tokio::main]
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    http::raise_open_file_limit();
    args.init_logging().map_err(anyhow::Error::msg)?;
    let mut http_config = args.check().map_err(anyhow::Error::msg)?;
    let protocol = args.tls.protocol().map_err(anyhow::Error::msg)?;
    if let http::Protocol::Tls(tls) = &protocol {
        tls.reload_on_sighup();
    }
    ssehub::selector::set_max_templates(usize::try_from(args.max_templates).unwrap_or(usize::MAX));
    let store = args.history_store()?;
    let builder = Hub::builder().config(args.hub_config()).store(store);
    let (builder, cluster) = join_cluster(builder, &args).await?;
    let hub = builder.build();
    if let Some(wait) = cluster {
        wait.await;
    }
    if let Some(dir) = &args.data_dir {
        eprintln!(
            "ssehub: history on disk in {}; next id {}",
            dir.display(),
            hub.epoch().id(hub.next_seq())
        );
    }
    let main = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
    let publish = match args.publish_listen.0 {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--publish-listen {addr}: cannot listen there (another hub on this host? give each its own, or off)"))?,
        ),
        None => None,
    };
    // The listening line last: tools wait for it, and then know the publish listener too.
    match &publish {
        Some(listener) => eprintln!(
            "ssehub: publish without a token on http://{}/publish (this host only)",
            listener.local_addr()?
        ),
        None if args.publish_token.is_none() && !args.publish_open => {
            eprintln!("ssehub: no --publish-listen, --publish-token or --publish-open: only --stdin and code can publish")
        }
        None => {}
    }
    let signals = StopSignals::watch()?;
    args.log_start(
        main.local_addr()?,
        publish.as_ref().and_then(|l| l.local_addr().ok()),
        &protocol,
    );
    eprintln!(
        "ssehub: listening on {}://{}",
        protocol.scheme(),
        main.local_addr()?
    );

    if args.stdin {
        let template = feed::LineTemplate {
            topic: args.stdin_topic.clone(),
            name: args.stdin_event.clone(),
        };
        let reader = tokio::io::BufReader::new(tokio::io::stdin());
        tokio::spawn(feed::lines(reader, hub.clone(), template));
    }

    let relays = ssehub::upstream::spawn(&hub, &args.upstream.upstream, args.upstream.options());
    http_config
        .extra_metrics
        .add(move |out| relays.render_metrics(out));

    let listeners = http::Listeners {
        main,
        publish,
        protocol,
    };
    let shutdown = announced_shutdown(hub.clone(), args.ops.shutdown_delay, signals);
    http::serve(listeners, hub, http_config, shutdown).await?;
    eprintln!("ssehub: stopped");
    // A read blocked on stdin would hold the runtime open; nothing is left to clean up.
    std::process::exit(0)
}

/// With --redis, connects and adds the cluster to the hub; the future waits until the hub's
/// reader has caught up with Redis (bounded: a hub that cannot catch up serves anyway).
#[cfg(feature = "cluster")]
async fn join_cluster(
    builder: ssehub::HubBuilder,
    args: &ServeArgs,
) -> anyhow::Result<(
    ssehub::HubBuilder,
    Option<impl std::future::Future<Output = ()>>,
)> {
    let redis = &args.cluster;
    let cluster = match (&redis.redis, redis.redis_cluster.is_empty()) {
        (Some(url), _) => ssehub::cluster::Cluster::connect(url, redis.redis_shards).await?,
        (None, false) => {
            ssehub::cluster::Cluster::connect_cluster(&redis.redis_cluster, redis.redis_shards)
                .await?
        }
        (None, true) => return Ok((builder, None)),
    };
    cluster.wait_for_replicas(redis.redis_wait_replicas);
    eprintln!(
        "ssehub: cluster mode: history in Redis (epoch {}, {} shards)",
        cluster.epoch().as_str(),
        cluster.shards()
    );
    let builder = builder.cluster(cluster.clone());
    let wait = async move {
        let limit = std::time::Duration::from_secs(60);
        if tokio::time::timeout(limit, cluster.caught_up())
            .await
            .is_err()
        {
            tracing::warn!("redis: not caught up after 60s; serving anyway");
        }
    };
    Ok((builder, Some(wait)))
}

#[cfg(not(feature = "cluster"))]
async fn join_cluster(
    builder: ssehub::HubBuilder,
    args: &ServeArgs,
) -> anyhow::Result<(ssehub::HubBuilder, Option<std::future::Ready<()>>)> {
    match args.cluster.flag() {
        Some(flag) => anyhow::bail!("{flag}: this ssehub was built without the `cluster` feature"),
        None => Ok((builder, None)),
    }
}

/// Resolves on SIGTERM or SIGINT, after `delay` in which `/readyz` fails and all else goes on
/// (`--shutdown-delay`); a second signal cuts the wait short.
async fn announced_shutdown(hub: Hub, delay: std::time::Duration, mut signals: StopSignals) {
    signals.next().await;
    if delay.is_zero() {
        return;
    }
    hub.announce_shutdown();
    tracing::info!(
        "shutting down in {}s: /readyz answers 503 meanwhile (a second signal: at once)",
        delay.as_secs()
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = signals.next() => {}
    }
}

/// SIGTERM and SIGINT, watched from before the hub says it listens: a signal sent as soon as a
/// tool (or systemd) sees that line is a clean shutdown, not the default kill.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn watch() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
