//! Publisher keys, join tokens and the trust settings of each command.
//!
//! - `treecast keygen` creates the publisher key that names and signs your streams.
//! - `treecast token` issues a join token for a private stream.
//! - [`origin_trust`] / [`joiner_trust`] turn the command-line options into the node's
//!   [`TrustConfig`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use treecast_relay::node::TrustConfig;
use treecast_relay::node::publisher_key::{PublisherKeyFile, random_u64};
use treecast_relay::proto::trust::{Credential, JoinToken, StreamName, TokenClaims};

use crate::cli::{JoinTrustArgs, KeygenArgs, PublishTrustArgs, TokenArgs};

/// Where the publisher key lives: `--key`, else `publisher.key` in the data directory.
pub fn key_path(key: &Option<PathBuf>, data_dir: &Path) -> PathBuf {
    key.clone()
        .unwrap_or_else(|| data_dir.join("publisher.key"))
}

/// `treecast keygen`.
pub fn keygen(args: &KeygenArgs, data_dir: &Path) -> Result<()> {
    let path = key_path(&args.key, data_dir);
    let k = PublisherKeyFile::create(&path, args.force).context("creating the publisher key")?;
    println!("publisher key written to {}", path.display());
    println!("public key:  {}", k.key.public());
    println!(
        "your streams are named {}/NAME (e.g. `treecast publish --name concert`)",
        k.key.public()
    );
    Ok(())
}

/// `treecast token`: prints a credential for a viewer or relay of a private stream.
pub fn token(args: &TokenArgs, data_dir: &Path) -> Result<()> {
    let path = key_path(&args.key, data_dir);
    let k = PublisherKeyFile::load(&path)
        .context("loading the publisher key (create one with `treecast keygen`)")?;
    let stream = StreamName::new(k.key.public(), &args.name)?;
    let now = unix_now();
    let valid = args.valid;
    let claims = TokenClaims {
        stream: stream.tag(),
        subject: args.subject.clone(),
        not_before: now.saturating_sub(60),
        expires: now.saturating_add(valid.as_secs()),
        relay_only: args.relay_only,
    };
    let token = JoinToken::issue(&k.key, claims);
    let content_key = (!args.relay_only).then(|| k.content_key(&args.name));
    let cred = Credential { token, content_key };
    println!("{}", cred.to_text());
    eprintln!(
        "token for {:?} on stream {stream}, valid {} s{}",
        args.subject,
        valid.as_secs(),
        if args.relay_only {
            " (relay only: cannot decrypt an encrypted stream)"
        } else {
            ""
        }
    );
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The origin's trust settings: its publisher key signs everything; `--private` and
/// `--encrypt` restrict who may join and watch.
///
/// With `ephemeral` (and no `--key`) the key lives only for this run.
pub fn origin_trust(
    args: &PublishTrustArgs,
    name: &str,
    data_dir: &Path,
    ephemeral: bool,
) -> Result<TrustConfig> {
    let k = if ephemeral && args.key.is_none() {
        PublisherKeyFile::generate().context("creating a publisher key")?
    } else {
        let path = key_path(&args.key, data_dir);
        let (k, created) =
            PublisherKeyFile::load_or_create(&path).context("loading the publisher key")?;
        if created {
            eprintln!("created publisher key {}", path.display());
        }
        k
    };
    let stream =
        StreamName::new(k.key.public(), name).context("the broadcast --name names the stream")?;
    let seal = if args.encrypt {
        Some((k.content_key(name), random_u64()?))
    } else {
        None
    };
    Ok(TrustConfig {
        stream: Some(stream),
        signer: Some(k.key.clone()),
        private: args.private || args.encrypt,
        seal,
        credential: None,
    })
}

/// A relay's or viewer's trust settings: the stream to accept and the token to present.
pub fn joiner_trust(args: &JoinTrustArgs) -> Result<TrustConfig> {
    let credential = match &args.token {
        Some(t) => Some(
            Credential::parse(t)
                .context("--token is not a treecast token (it starts with tct1.)")?,
        ),
        None => None,
    };
    if let (Some(c), Some(s)) = (&credential, &args.stream)
        && c.token.claims.stream != s.tag()
    {
        bail!("the --token was issued for another stream than --stream {s}");
    }
    Ok(TrustConfig {
        stream: args.stream.clone(),
        credential,
        ..TrustConfig::default()
    })
}
