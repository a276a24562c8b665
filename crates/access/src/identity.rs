//! Who is asking. Every door (MQTT CONNECT, a client certificate, a SigV4-signed HTTP request)
//! ends in one [`Identity`], so one ACL speaks about users, devices and access keys alike.

use std::sync::Arc;

/// How an identity proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing: the anonymous identity.
    None,
    /// A username and password from the password file.
    Password,
    /// A client certificate verified by a TLS listener (its CN or a SAN).
    Certificate,
    /// An AWS Signature Version 4 with a configured access key.
    AccessKey,
    /// Named in the broker's own configuration (a bridge's `identity`).
    Configured,
    /// The broker's operator: what the configuration file itself sets up (a bridge without an
    /// identity of its own). Allowed everything, as the one who writes the ACL is.
    Operator,
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name ACL rules use (the username, the certificate's name, or the access key's
    /// identity). Empty for anonymous.
    pub name: Arc<str>,
    /// How it was proven.
    pub proof: Proof,
    /// The AWS account the identity belongs to (resource policies such as a queue's
    /// `AddPermission` grants name accounts).
    pub account: Arc<str>,
}

impl Identity {
    /// The anonymous caller of `account`.
    pub fn anonymous(account: &str) -> Identity {
        Identity {
            name: "".into(),
            proof: Proof::None,
            account: account.into(),
        }
    }

    /// The broker's operator (see [`Proof::Operator`]).
    pub fn operator() -> Identity {
        Identity {
            name: "outpost".into(),
            proof: Proof::Operator,
            account: "".into(),
        }
    }

    /// True for the anonymous caller.
    pub fn is_anonymous(&self) -> bool {
        self.proof == Proof::None
    }

    /// The username for `%u` substitution (none for anonymous).
    pub fn username(&self) -> Option<&str> {
        (!self.is_anonymous()).then_some(&*self.name)
    }

    /// AWS's words for a refusal of `action` on `resource` to this identity.
    pub fn denial(&self, action: &str, resource: &str) -> String {
        let principal = if self.is_anonymous() {
            "anonymous".to_string()
        } else {
            self.principal_arn()
        };
        format!(
            "User: {principal} is not authorized to perform: {action} on resource: {}",
            resource.chars().take(256).collect::<String>()
        )
    }

    /// The principal ARN resource policies see: `arn:aws:iam::<account>:user/<name>`, or
    /// `*` for anonymous.
    pub fn principal_arn(&self) -> String {
        if self.is_anonymous() {
            "*".into()
        } else {
            format!("arn:aws:iam::{}:user/{}", self.account, self.name)
        }
    }
}

impl Identity {
    /// A short text that names this identity, kept with what it created (a subscription, a
    /// rule target) so it can be asked about again later: `<proof>:<account>:<name>`.
    pub fn encode(&self) -> String {
        let proof = match self.proof {
            Proof::None => "none",
            Proof::Password => "password",
            Proof::Certificate => "certificate",
            Proof::AccessKey => "key",
            Proof::Configured => "configured",
            Proof::Operator => "operator",
        };
        format!("{proof}:{}:{}", self.account, self.name)
    }

    /// The identity [`Identity::encode`] wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<Identity> {
        let mut parts = text.splitn(3, ':');
        let proof = match parts.next()? {
            "none" => Proof::None,
            "password" => Proof::Password,
            "certificate" => Proof::Certificate,
            "key" => Proof::AccessKey,
            "configured" => Proof::Configured,
            "operator" => Proof::Operator,
            _ => return None,
        };
        let account = parts.next()?;
        let name = parts.next()?;
        Some(Identity {
            name: name.into(),
            proof,
            account: account.into(),
        })
    }
}
