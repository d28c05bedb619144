//! gatewayd's nftables ruleset (`--nftables`): rendered from the policy in force and the ports the
//! daemon bound, applied in one transaction after the XDP swap of every apply, rollback and reload.
//!
//! The engine keeps the two in step (see `Engine::apply_policy`): the ruleset is checked (`nft
//! --check`) before the data path is touched; if the kernel still refuses it after the XDP swap, the
//! previous image is swapped back and the error names nft's reason — so XDP and nftables never
//! enforce different policies without an error saying so. The ruleset is identified by the SHA-256 of
//! its JSON (what `gatewayctl status` shows) and a generation counting the applies of this process.
use std::time::SystemTime;

use gateway_nft::{BootInput, NftError, NftInput, nftables::schema::Nftables};
use gateway_policy::{Policy, Profile};
use sha2::{Digest as _, Sha256};

use crate::control::NftStatus;

/// A rendered ruleset and its hash.
pub struct Rendered {
    ruleset: Nftables<'static>,
    hash: String,
}

impl Rendered {
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// The ruleset in force.
struct InForce {
    hash: String,
    generation: u64,
    /// The policy generation (XDP) it was applied with.
    policy_generation: u64,
    at: SystemTime,
}

/// Renders and applies the ruleset for the ports the daemon bound.
pub struct Firewall {
    profile: Profile,
    /// `(logical name, kernel ifname)` of the bound ports: rules match kernel names.
    ifnames: Vec<(String, String)>,
    in_force: Option<InForce>,
    applies: u64,
}

impl Firewall {
    pub fn new(profile: Profile, ifnames: Vec<(String, String)>) -> Firewall {
        Firewall {
            profile,
            ifnames,
            in_force: None,
            applies: 0,
        }
    }

    /// The ruleset for `policy` (pure: same policy and ports, same hash).
    pub fn render(&self, policy: &Policy) -> Result<Rendered, NftError> {
        let mut input = NftInput::from_policy(
            &self.profile,
            policy,
            gateway_nft::Management::from_policy(policy),
        );
        for port in &mut input.ports {
            if let Some((_, ifname)) = self.ifnames.iter().find(|(n, _)| *n == port.name) {
                port.ifname.clone_from(ifname);
            }
        }
        let ruleset = gateway_nft::render(&input);
        let json = gateway_nft::to_json(&ruleset)?;
        let hash = gateway_policy::image::hex(Sha256::digest(json.as_bytes()).as_slice());
        Ok(Rendered { ruleset, hash })
    }

    /// Dry run in the kernel's own parser (nothing is committed).
    pub fn check(&self, r: &Rendered) -> Result<(), NftError> {
        gateway_nft::check(&r.ruleset)
    }

    /// Is `r` the ruleset in force already?
    pub fn is_in_force(&self, r: &Rendered) -> bool {
        self.in_force.as_ref().is_some_and(|f| f.hash == r.hash)
    }

    /// Applies `r` in one transaction (table `inet gateway` replaced whole). On error the ruleset in
    /// force is unchanged (nft transactions are all or nothing).
    pub fn apply(&mut self, r: &Rendered, policy_generation: u64) -> Result<(), NftError> {
        gateway_nft::apply(&r.ruleset)?;
        self.applies += 1;
        self.in_force = Some(InForce {
            hash: r.hash.clone(),
            generation: self.applies,
            policy_generation,
            at: SystemTime::now(),
        });
        tracing::info!(hash = %r.hash, generation = self.applies, policy_generation, "nftables ruleset applied");
        Ok(())
    }

    pub fn status(&self) -> Option<NftStatus> {
        self.in_force.as_ref().map(|f| NftStatus {
            hash: f.hash.clone(),
            generation: f.generation,
            policy_generation: f.policy_generation,
            applied_unix: f
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

/// `gatewayd --teardown --nftables`: the data path is going away, so the ruleset falls back to the
/// boot default deny — without a metrics port, since no gatewayd serves it any more. Never an open
/// box.
pub fn teardown() -> Result<(), NftError> {
    gateway_nft::apply(&gateway_nft::render_boot(&BootInput::default()))
}
