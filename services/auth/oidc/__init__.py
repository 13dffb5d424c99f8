"""Single sign-on with OpenID Connect: the issuer (provider.py), the sign-ins in progress
(flows.py), and the use case that joins them to Dropfile's accounts (sign_in.py)."""
