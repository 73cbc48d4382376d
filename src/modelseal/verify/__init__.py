"""Install-time verification: the numbered checks, host compatibility and the deployment policy.
"""
