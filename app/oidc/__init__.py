"""Dashboard sign-in through the organisation's identity provider (OpenID Connect).

`provider` talks to the identity provider (discovery, the authorization URL, the code's
redemption and the ID token's validation, with authlib); `sign_ins` keeps each sign-in in
progress (PKCE verifier, state, nonce) until the browser comes back; `claims` turns the ID
token's claims into a scope and a team; `principals` keeps the person as an ApiKey of kind
`user`, which the rest of the service already understands.
"""
