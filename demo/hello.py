# The demo function: OpenWhisk-style Python action.
import json, re, collections

def main(args):
    name = args.get("name", "world")
    words = collections.Counter(re.findall(r"\w+", json.dumps(args)))
    return {"greeting": f"Hello, {name}!", "words": len(words)}
