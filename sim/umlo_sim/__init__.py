"""umlo-sim: a loopback simulator of Atlassian's organization and user
management REST APIs, used to test the ngx_umlo module without the network."""

__version__ = "1.0"
