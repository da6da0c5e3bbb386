//! What a user may do: the roles carried in access tokens and checked at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role granted to a user. Serialised in lowercase (`"customer"`, `"admin"`),
/// which is also how it appears in tokens and in the `X-User-Roles` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shops: places and follows their own orders.
    Customer,
    /// Runs the shop: manages the catalogue and stock, sees every order.
    Admin,
}

/// A role name that is not one of bazaar's roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 2] = [Role::Customer, Role::Admin];

    /// The role's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Customer => chassis::extract::ROLE_CUSTOMER,
            Role::Admin => chassis::extract::ROLE_ADMIN,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str() == name).ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_lowercase() {
        assert_eq!(serde_json::to_string(&Role::Customer).unwrap(), r#""customer""#);
        assert_eq!(serde_json::to_string(&Role::Admin).unwrap(), r#""admin""#);
    }

    #[test]
    fn parses_its_own_wire_names_only() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{role}\"")).unwrap(), role);
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }
}
