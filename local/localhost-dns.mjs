// Preloaded (node --import) into the processes the local stack starts: resolves
// *.localhost to loopback, as fauxqs' interceptLocalhostDns does in the stack's
// own process, since fauxqs queue URLs are http://sqs.<region>.localhost:<port>/...
import dns from 'node:dns';

const lookup = dns.lookup;
dns.lookup = (name, options, callback) => {
  if (typeof options === 'function') [callback, options] = [options, {}];
  if (typeof options === 'number') options = { family: options };
  if (!String(name).endsWith('.localhost')) return lookup(name, options, callback);
  return options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4);
};
