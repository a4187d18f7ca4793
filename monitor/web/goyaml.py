"""YAML typed as exporter-toolkit's Go decoder (go.yaml.in/yaml/v2) types it.

yaml.v2 decodes any scalar into a Go string field as the text written: a header value
`X-XSS-Protection: 1` is "1", `0x10` stays "0x10" (PyYAML would make it 16), a user
name `1234:` is "1234". So here a scalar PyYAML would make a number, a boolean or a date
stays its text: a Scalar, which is a str and also carries what PyYAML made of it, for the
two boolean fields (a quoted "true" there is a string, refused as Go refuses it).
"""
import yaml

from monitor.settings import yamlfile


class Scalar(str):
    """The text of a plain scalar; .resolved is what YAML 1.1 makes of it (1, True...)."""
    resolved = None


class Loader(yamlfile.SafeLoader):
    pass


def _keeping_text(construct):
    def constructor(loader, node):
        text = Scalar(node.value)
        text.resolved = construct(loader, node)
        return text
    return constructor


for _tag in ("bool", "int", "float", "timestamp"):
    Loader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                           _keeping_text(getattr(yaml.SafeLoader, f"construct_yaml_{_tag}")))


def boolean(value):
    """True or False for a YAML boolean (null is Go's zero value, false); None otherwise."""
    if value is None:
        return False
    value = getattr(value, "resolved", value)
    return value if isinstance(value, bool) else None
